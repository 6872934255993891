"""Custom nodes without Ray: OVMS C libraries through cffi, Python nodes, and the built-in set.

The contract (``nodes.base.Node``), the same for C and Python nodes::

    factory = load_node_class(base_path, config_dir)   # checks base_path now; picklable
    node = factory()                                    # a fresh node for one replica
    node.name = "crop"                                  # the pipeline's node name, for errors
    node.initialize(params)                             # once; params are dict[str, str]
    node.inputs_info(), node.outputs_info()             # list[TensorInfo], -1 = dynamic dim
    outputs = node.run(inputs, outputs=["images"])      # per request; serialized unless thread_safe
    node.deinitialize()                                 # once, at shutdown

``run`` calls ``execute`` and checks its result (NodeMissingOutput for a requested output not
produced). Errors are in ``nodes.errors`` and map to HTTP through ``app.errors``.

``base_path`` forms (``custom_node_library_config_list[].base_path``):

- ``"builtin:<name>"``: a built-in node. C (``nodes/src``, built by ``python -m nodes.build``):
  ``add_one``, ``image_transformation``, ``model_zoo_intel_object_detection``. Python
  (``nodes/builtin``): ``face_blur``, ``ppocr_det_preprocess`` (PP-OCR detector input), ``ppocr_text_crops`` (PP-OCRv4 text-box crops, the
  horizontal_ocr role), ``ctc_decode`` (recognizer scores to ``texts_string``). OVMS's paths
  ``/ovms/lib/custom_nodes/libcustom_node_<name>.so`` also resolve to the built-in of that name.
- ``"path/to/libnode.so"``: a library compiled against ``nodes/custom_node_interface.h`` (or
  OVMS's); relative to the config's folder; no ``..``.
- ``"path/to/node.py"`` (exactly one Node subclass) or ``"path/to/node.py:Class"``.
- ``"package.module:Class"``.
"""
from nodes.base import Node
from nodes.library import LibraryNode
from nodes.loading import NodeFactory, load_node_class

__all__ = ["LibraryNode", "Node", "NodeFactory", "load_node_class"]
