"""Built-in ctc_decode: PP-OCR recognizer scores to text, as OVMS strings.

Input ``scores`` FP32 [N,T,C] or [N,1,T,C] (after a demultiplexer's gather). Greedy CTC: argmax
per step, collapse repeats, drop the blank (class 0). Classes are ``["blank"] + characters + [" "]``
(PaddleOCR with use_space_char), so C = len(characters) + 2.

Outputs: ``texts_string`` U8 [N, maxlen+1], each text's UTF-8 bytes zero-padded (OVMS's 2-D U8
string convention: a pipeline output named ``*_string`` goes back to the client as strings), and
``confidences`` FP32 [N,1], the mean probability of the kept characters (0 for an empty text).

Param ``with_coordinates`` ("false" by default): also take ``coordinates`` INT32 [N,1,4] and give
them back as ``coordinates`` [N,4]. As the gather node after a demultiplexer, this lets texts and
their boxes leave a pipeline together: a response may not mix gathered and ungathered tensors.

The character list comes from param ``model_path`` (the recognizer's .onnx or .xml; read from its
rt_info ``framework/character``, one character per line), or from ``characters`` given to the
constructor by a Python caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nodes import Node, NodeExecutionFailed, NodeInitializeFailed, TensorInfo, Tensors
from nodes.builtin.params import boolean


def characters_from_model(path: str | Path) -> list[str]:
    """The character list a PaddleOCR model carries in its metadata (rt_info framework/character)."""
    import openvino as ov  # only this node needs it; keep `import nodes` light

    model = ov.Core().read_model(str(path))
    return model.get_rt_info(["framework", "character"]).astype(str).split("\n")


def encode_strings(texts: Sequence[str]) -> np.ndarray:
    """OVMS's string tensor: [n, maxlen+1] U8, each UTF-8 string zero-padded."""
    encoded = [t.encode() for t in texts]
    out = np.zeros((len(encoded), max([0, *map(len, encoded)]) + 1), np.uint8)
    for row, data in zip(out, encoded, strict=True):
        row[: len(data)] = np.frombuffer(data, np.uint8)
    return out


def decode_strings(tensor: np.ndarray) -> list[str]:
    """The inverse of encode_strings."""
    return [bytes(row).split(b"\0", 1)[0].decode() for row in tensor]


class CTCDecode(Node):
    thread_safe = True  # no state changes after initialize

    def __init__(self, characters: Sequence[str] | None = None) -> None:
        # Empty until known (a known list holds at least the blank and the space): from
        # ``characters`` here, or from param model_path in initialize.
        self.classes: list[str] = self._classes(characters) if characters is not None else []

    @staticmethod
    def _classes(characters: Sequence[str]) -> list[str]:
        return ["", *characters, " "]

    def initialize(self, params: dict[str, str]) -> None:
        if "model_path" in params:
            try:
                self.classes = self._classes(characters_from_model(params["model_path"]))
            except Exception as exc:  # openvino raises RuntimeError for a missing file or key
                raise NodeInitializeFailed(
                    self.node_name,
                    f"param 'model_path' = {params['model_path']!r}: "
                    f"cannot read the character list from its rt_info: {exc}",
                ) from exc
        if not self.classes:
            raise NodeInitializeFailed(
                self.node_name,
                "param 'model_path' is required: the recognizer model "
                "whose rt_info framework/character lists the characters",
            )
        self.with_coordinates = boolean(self.node_name, params, "with_coordinates", False)

    def inputs_info(self) -> list[TensorInfo]:
        # Declared as gathered shards, [N,1,T,C]: the node's place is after a demultiplexer.
        scores = TensorInfo("scores", "FP32", (-1, 1, -1, len(self.classes)))
        return [scores, TensorInfo("coordinates", "INT32", (-1, 1, 4))] if self.with_coordinates else [scores]

    def outputs_info(self) -> list[TensorInfo]:
        outputs = [TensorInfo("texts_string", "UINT8", (-1, -1)), TensorInfo("confidences", "FP32", (-1, 1))]
        return [*outputs, TensorInfo("coordinates", "INT32", (-1, 4))] if self.with_coordinates else outputs

    def execute(self, inputs: Tensors) -> Tensors:
        scores = np.asarray(inputs["scores"])
        if scores.ndim == 4 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if scores.ndim != 3 or scores.shape[2] != len(self.classes):
            raise NodeExecutionFailed(
                self.node_name,
                f"scores must be [N,T,{len(self.classes)}] or "
                f"[N,1,T,{len(self.classes)}], got {list(inputs['scores'].shape)}",
            )
        texts, confidences = zip(*(self.decode(line) for line in scores), strict=True) if len(scores) else ((), ())
        outputs = {
            "texts_string": encode_strings(texts),
            "confidences": np.array(confidences, np.float32).reshape(-1, 1),
        }
        if self.with_coordinates:
            coordinates = np.asarray(inputs["coordinates"], np.int32).reshape(-1, 4)
            if len(coordinates) != len(scores):
                raise NodeExecutionFailed(self.node_name, f"{len(coordinates)} coordinates for {len(scores)} texts")
            outputs["coordinates"] = coordinates
        return outputs

    def decode(self, scores: np.ndarray) -> tuple[str, float]:
        """Greedy CTC decoding of one [T,C] score matrix."""
        best = scores.argmax(1)
        keep = (best != 0) & np.r_[True, best[1:] != best[:-1]]
        probabilities = scores[np.arange(len(best)), best][keep]
        text = "".join(self.classes[i] for i in best[keep])
        return text, float(probabilities.mean()) if probabilities.size else 0.0
