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
    @property
    def splits(self) -> Tuple[int, int, int]: ...
    @property
    def label_ids(self) -> List[int]: ...
    @property
    def words(self) -> Optional[List[str]]: ...

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

class OpenStore:
    def __init__(self, path: str) -> None: ...
    def probe_pass(
        self,
        weights: npt.NDArray[np.float32],
        bias: npt.NDArray[np.float64],
        task: Optional[str] = None,
        part: Optional[Tuple[int, int]] = None,
        split: str = "train",
        gradient: bool = True,
        threads: Optional[int] = None,
    ) -> Tuple[
        int, float, int, Optional[npt.NDArray[np.float64]], Optional[npt.NDArray[np.float64]]
    ]: ...

class Statistics:
    @staticmethod
    def load(path: str) -> "Statistics": ...
    @staticmethod
    def from_bytes(data: bytes) -> "Statistics": ...
    def to_bytes(self) -> bytes: ...
    def save(self, path: str) -> None: ...
    def merged(self, other: "Statistics") -> "Statistics": ...
    @property
    def rows(self) -> int: ...
    @property
    def shards(self) -> List[str]: ...
    @property
    def task(self) -> str: ...
    @property
    def neurons(self) -> List[str]: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def parts(self) -> List[str]: ...
    def rank(
        self,
        method: str,
        signed: bool = False,
        detector_iou: float = 0.04,
        neurons: int = 100,
        diagonal: bool = False,
        positive: Optional[str] = None,
    ) -> str: ...

def store_manifest(path: str) -> str: ...
def store_stats(
    path: str,
    task: Optional[str] = None,
    shards: Optional[Tuple[int, int]] = None,
    part: Optional[Tuple[int, int]] = None,
    train_only: bool = True,
    iou_quantile: Optional[float] = None,
    iou_thresholds: Optional[Statistics] = None,
    gaussian_neurons: Optional[List[int]] = None,
    gaussian_rows: int = 4000,
    seed: int = 0,
    ap_bits: Optional[int] = None,
    ap_threshold: float = 0.05,
    threads: Optional[int] = None,
) -> Statistics: ...
def store_create(
    path: str,
    out: str,
    text: Optional[str] = None,
    source: Optional[str] = None,
    part: Optional[Tuple[int, int]] = None,
    dtype: str = "f32",
    shard_mib: int = 256,
    task: Optional[str] = None,
    threads: Optional[int] = None,
    plugin_dirs: List[str] = ...,
    plugin_files: List[str] = ...,
) -> str: ...
def store_join(path: str) -> str: ...
def load_source(
    name: str,
    params: str,
    seed: Optional[int] = None,
    threads: Optional[int] = None,
    plugin_dirs: List[str] = ...,
    plugin_files: List[str] = ...,
) -> Tuple[npt.NDArray[np.float32], ArrayData, str]: ...
def lca_ordering(
    weights: npt.NDArray[np.float32], search_stride: int, granularity: Optional[int] = None
) -> Tuple[List[int], List[int]]: ...
def mass_selection(
    weights: npt.NDArray[np.float32], percentage: float, bottom: bool = False
) -> Tuple[List[int], List[List[int]]]: ...
def above_max_fraction(
    weights: npt.NDArray[np.float32], fraction: float
) -> Tuple[List[int], List[List[int]]]: ...
def read_activations_json(path: str) -> Tuple[List[npt.NDArray[np.float32]], List[List[str]], int]: ...
