# Source-checkout shim: nn-dataset ships `ab` as a regular package. When this tree is first on sys.path,
# extend `ab.__path__` so `ab.nn` (from the installed nn-dataset) still imports beside our `ab.gpt`.
# The wheel does not ship this file: installed, our files land inside nn-dataset's own `ab/`.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
