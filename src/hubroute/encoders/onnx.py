"""A sentence-transformers encoder's forward pass run by ONNX Runtime, for routing only.

:func:`to_onnx` exports a :class:`~sentence_transformers.SentenceTransformer` (every module:
transformer, pooling, normalisation; LoRA adapters included) with torch's ONNX exporter, with
dynamic batch and sequence axes, and opens it in an ONNX Runtime CPU session. With
``quantize=True`` the weights of every ``MatMul`` are quantised to int8 per output channel
(dynamic quantisation: activations are quantised on each call). The returned
:class:`OnnxSentenceModel` answers the calls the routers make of a sentence-transformers model
(``preprocess``, ``__call__``, ``encode``, ``train``), so a router routes through it unchanged.
Tokenisation stays with the original model. Speed and agreement with fp32 are measured in
``bench/inference_speed.py`` and ``bench/service_load.py``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hubroute.errors import HubrouteError

OUTPUT = "sentence_embedding"


class _Forward(nn.Module):
    """``st`` as a module of positional tensors (ONNX inputs cannot be a dict)."""

    def __init__(self, st: nn.Module, names: Sequence[str], extra: dict[str, Any]):
        super().__init__()
        self.st = st
        self.names = list(names)
        self.extra = extra

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        features = dict(zip(self.names, tensors, strict=True)) | self.extra
        return self.st(features)[OUTPUT]


class OnnxSentenceModel:
    """An exported encoder: ONNX Runtime session plus the original model's tokenisation.

    ``training`` is always False; ``train(True)`` is an error (an exported graph does not learn).
    """

    training = False

    def __init__(self, st: Any, session: Any, input_names: Sequence[str], quantized: bool):
        self._st = st  # kept for its tokeniser
        self.session = session
        self.input_names = list(input_names)
        self.quantized = quantized
        self.max_seq_length = st.max_seq_length

    def preprocess(self, texts: Sequence[str]) -> dict[str, Any]:
        """Tokenised ``texts``, as the original model's ``preprocess`` gives them."""
        return self._st.preprocess(list(texts))

    def __call__(self, features: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"sentence_embedding": (n, dim) float32 tensor}`` for tokenised features."""
        feed = {k: features[k].cpu().numpy() for k in self.input_names}
        (out,) = self.session.run([OUTPUT], feed)
        return {OUTPUT: torch.from_numpy(out)}

    def train(self, mode: bool = True) -> OnnxSentenceModel:
        if mode:
            raise HubrouteError("an ONNX Runtime encoder is for routing only; load the router again to train it")
        return self

    def eval(self) -> OnnxSentenceModel:
        return self

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 32,
        convert_to_numpy: bool = True,
        normalize_embeddings: bool = False,
        show_progress_bar: bool = False,
        **_: Any,
    ) -> np.ndarray:
        """``(len(texts), dim)`` float32 embeddings, encoded in length-sorted batches."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = [
            self(self.preprocess([texts[j] for j in order[i : i + batch_size]]))[OUTPUT].numpy()
            for i in range(0, len(texts), batch_size)
        ]
        out = np.empty((len(texts), parts[0].shape[1]) if parts else (0, 0), dtype=np.float32)
        if parts:
            out[order] = np.concatenate(parts)
        if normalize_embeddings and len(out):
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and quantiser's progress lines and advice (warnings, logging)."""
    # the quantiser logs its advice on the root logger
    loggers = [logging.getLogger("torch.onnx"), logging.getLogger("torch.export"), logging.getLogger()]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def open_session(graph: bytes, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's threads busy-wait between calls only when torch is single-threaded: the
    # router projects and scores with torch right after each run, and a spinning pool would
    # otherwise fight torch's OpenMP pool for the same cores (bench/inference_speed.py runs with
    # torch's default threads; bench/service_load.py serves with one, as hubroute.service does)
    spin = "1" if torch.get_num_threads() == 1 else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _export(st: nn.Module, sample: dict[str, Any], names: list[str], quantize: bool) -> bytes:
    """The serialised ONNX graph of ``st`` (one self-contained model, weights inline)."""
    import onnx

    extra = {k: v for k, v in sample.items() if not isinstance(v, torch.Tensor)}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = (tuple({0: batch, 1: seq} for _ in names),)  # one entry: the *tensors tuple
    with tempfile.TemporaryDirectory(prefix="hubroute-onnx-") as tmp:
        path = Path(tmp) / "encoder.onnx"
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                _Forward(st, names, extra),
                tuple(sample[k] for k in names),
                str(path),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=names,
                output_names=[OUTPUT],
                verbose=False,
            )
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            qpath = Path(tmp) / "encoder-int8.onnx"
            with _quiet():
                quantize_dynamic(
                    path, qpath, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, per_channel=True
                )
            path = qpath
        return onnx.load(str(path)).SerializeToString()  # external weight files, if any, read inline


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def to_onnx(
    st: nn.Module, *, quantize: bool = False, threads: int | None = None, path: str | Path | None = None
) -> OnnxSentenceModel:
    """Export ``st`` (a SentenceTransformer on the CPU) and open it in ONNX Runtime.

    ``quantize``: int8 per-channel weights for every ``MatMul``. ``threads``: intra-op threads
    (default: every core this process may use). ``path``: a graph file to reuse when it exists, or to
    write after exporting (the export takes seconds); the caller keys it to ``st``'s weights and
    ``quantize``. Without ``path`` the graph lives in memory only. A graph file that ONNX Runtime
    cannot open (truncated, corrupt) is exported again.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise HubrouteError("ONNX inference needs the packages onnxruntime, onnx and onnxscript") from None
    if any(p.device.type != "cpu" for p in st.parameters()):
        raise HubrouteError("ONNX Runtime inference runs on the CPU only; load the router with device='cpu'")
    st = st.float().eval()
    sample = st.preprocess(["an example prompt to trace", "a shorter one"])
    names = [k for k, v in sample.items() if isinstance(v, torch.Tensor)]
    path = Path(path) if path is not None else None
    session = None
    if path is not None and path.is_file():
        try:
            session = open_session(path.read_bytes(), threads or available_cores())
        except Exception as e:  # a damaged graph file: export it again (the weights are intact)
            logging.getLogger("hubroute.encoders").warning("%s is unreadable (%s); exporting it again", path, e)
    if session is None:
        graph = _export(st, sample, names, quantize)
        if path is not None:
            _write_atomic(path, graph)
        session = open_session(graph, threads or available_cores())
    found = sorted(i.name for i in session.get_inputs())
    if found != sorted(names):
        raise HubrouteError(f"the ONNX graph {path} takes inputs {found}, but the encoder gives {sorted(names)}")
    return OnnxSentenceModel(st, session, names, quantize)
