"""FractalNet variant generation, training and analysis for the LEMUR dataset."""

__version__ = "0.1.0"
