"""Built-in nodes, found by name from configs as ``"base_path": "builtin:<name>"``.

C nodes are ``nodes/src/<name>.c``, compiled by ``python -m nodes.build`` (or on first use);
Python nodes are listed in PYTHON_NODES.
"""

from __future__ import annotations

from nodes.build import c_node_names

PYTHON_NODES: dict[str, str] = {
    "face_blur": "nodes.builtin.face_blur:FaceBlur",
    "ppocr_text_crops": "nodes.builtin.text_crops:TextCrops",
    "ctc_decode": "nodes.builtin.ctc_decode:CTCDecode",
    "ppocr_det_preprocess": "nodes.builtin.det_preprocess:DetPreprocess",
}


def builtin_names() -> list[str]:
    return sorted([*c_node_names(), *PYTHON_NODES])
