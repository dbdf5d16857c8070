"""nn-gpt-fractal plugin adding depthwise-separable convolution and GroupNorm layer options."""
