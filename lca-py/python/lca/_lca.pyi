"""Type stubs of the extension module behind :mod:`lca` (its Rust side)."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

class LcaError(ValueError):
    """A recipe, file, array or parameter that lca cannot use."""

class ArrayData:
    def __init__(
        self,
        x: npt.NDArray[np.float32],
        labels: List[str],
        splits: Tuple[int, int, int],
        layers: int = 1,
        words: Optional[List[str]] = None,
        sentence_starts: Optional[List[int]] = None,
        name: str = "arrays",
    ) -> None: ...
    @property
    def shape(self) -> Tuple[int, int, int]: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def neuron_names(self) -> List[str]: ...

class RunOutput:
    def json(self) -> str: ...
    def markdown(self) -> str: ...
    def html(self) -> str: ...
    def probe_arrays(self) -> Dict[str, Dict[str, np.ndarray]]: ...
    def write(self, out: str) -> List[str]: ...

class FittedProbe:
    @property
    def name(self) -> str: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def accuracy(self) -> Dict[str, float]: ...
    def details_json(self) -> str: ...
    def arrays(self) -> Dict[str, np.ndarray]: ...
    def predict_proba(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

def run_recipe(
    path: str,
    text: Optional[str] = None,
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[str] = (),
    plugin_files: Sequence[str] = (),
) -> RunOutput: ...
def recipe_text(json: str) -> str: ...
def rank(
    name: str,
    params: str,
    data: ArrayData,
    probe: Optional[FittedProbe] = None,
    rankings: Sequence[Tuple[str, str]] = (),
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[str] = (),
    plugin_files: Sequence[str] = (),
) -> str: ...
def fit_probe(
    name: str,
    params: str,
    data: ArrayData,
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[str] = (),
    plugin_files: Sequence[str] = (),
) -> FittedProbe: ...
def evaluate(
    name: str,
    params: str,
    data: ArrayData,
    rankings: Sequence[Tuple[str, str]] = (),
    probes: Sequence[Tuple[str, FittedProbe]] = (),
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[str] = (),
    plugin_files: Sequence[str] = (),
) -> str: ...
def component_list(plugin_dirs: Sequence[str] = (), plugin_files: Sequence[str] = ()) -> str: ...
