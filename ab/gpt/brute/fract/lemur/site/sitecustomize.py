"""On PYTHONPATH, this makes torchvision accept the recorded CIFAR-10 subset by its own md5 sums (see
ab/gpt/brute/fract/lemur/subset.py); the real data is verified against the official sums as always."""
from ab.gpt.brute.fract.lemur.subset import install

install()
