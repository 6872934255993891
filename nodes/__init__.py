"""Custom nodes for pipelines: the node author's contract.

Write a node as a class::

    from nodes import Node, TensorInfo

    class Threshold(Node):
        def initialize(self, params): self.level = float(params.get("level", "0.5"))
        def inputs_info(self): return [TensorInfo("scores", "FP32", (1, -1))]   # -1: dynamic
        def outputs_info(self): return [TensorInfo("mask", "UINT8", (1, -1))]
        def execute(self, inputs): return {"mask": (inputs["scores"] > self.level).astype("uint8")}

and name it in ``custom_node_library_config_list[].base_path`` as ``"my_nodes.py"`` (exactly one
Node subclass), ``"my_nodes.py:Threshold"`` or ``"package.module:Threshold"``. Raise
``NodeInitializeFailed`` for bad params and ``NodeExecutionFailed`` for a request the node cannot
process; both answer 500 as OVMS does.

The other ``base_path`` forms, which the server handles the same way:

- ``"builtin:<name>"``: a built-in node. In C (``nodes/src``, built by ``python -m nodes.build``):
  ``add_one``, ``image_transformation``, ``model_zoo_intel_object_detection``. In Python
  (``nodes/builtin``): ``face_blur``, ``ppocr_det_preprocess`` (PP-OCR detector input),
  ``ppocr_text_crops`` (PP-OCRv4 text-box crops, the horizontal_ocr role) and ``ctc_decode``
  (recognizer scores to ``texts_string``). OVMS's paths
  ``/ovms/lib/custom_nodes/libcustom_node_<name>.so`` resolve to the built-in of that name.
- ``"path/to/libnode.so"``: a C library compiled against ``nodes/custom_node_interface.h`` (or
  OVMS's); relative to the config's folder; no ``..``.

Importing this package loads neither Ray nor cffi.
"""

from app.tensors import TensorInfo, Tensors
from nodes.base import Node
from nodes.errors import NodeExecutionFailed, NodeInitializeFailed

__all__ = ["Node", "NodeExecutionFailed", "NodeInitializeFailed", "TensorInfo", "Tensors"]
