"""Results analysis of a fractal sweep: tables, figures, statistics and a self-contained HTML report.

    python -m ab.gpt.brute.fract.report --help
"""
