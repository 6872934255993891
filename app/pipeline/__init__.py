"""Pipelines (OVMS ``pipeline_config_list``) without Ray: validation, execution and pictures.

The contract the Ray layer uses::

    catalog = DictCatalog()                          # or LocalCatalog.from_config(config, config_dir)
    catalog.add_model("dummy", 1, Signature.of(inputs, outputs))
    catalog.add_node("add_sub", params, Signature.of(...) or CatalogError(code, reason))
    results = validate_all(config.pipeline_config_list, catalog)   # name -> definition or error
    pipeline_status(results[name])                   # [VersionStatus] for /v1/config
    definition = ready_definition(results[name])     # raises PipelineInvalid (404) if not ready
    definition.metadata()                            # KServe metadata, versions ["1"]
    outputs = await run(definition, inputs, call)    # call(spec: NodeSpec, inputs) -> outputs

``call`` gets a ``NodeSpec`` (its ``node``: a ``ModelNode`` with model name and version, or a
``CustomNode`` with library and params; and the real output names needed) and the node's inputs
by real input name; it returns outputs by real output name.
"""

from app.pipeline.catalog import Catalog, CatalogError, DictCatalog, Signature, node_key
from app.pipeline.definition import REQUEST, RESPONSE, Connection, NodeSpec, PipelineDefinition
from app.pipeline.errors import PipelineInvalid, PipelineNameOccupied, PipelineNotLoadedYet
from app.pipeline.execution import Call, run
from app.pipeline.mermaid import to_mermaid
from app.pipeline.status import pipeline_status, ready_definition
from app.pipeline.validation import validate, validate_all

__all__ = [
    "REQUEST",
    "RESPONSE",
    "Call",
    "Catalog",
    "CatalogError",
    "Connection",
    "DictCatalog",
    "NodeSpec",
    "PipelineDefinition",
    "PipelineInvalid",
    "PipelineNameOccupied",
    "PipelineNotLoadedYet",
    "Signature",
    "node_key",
    "pipeline_status",
    "ready_definition",
    "run",
    "to_mermaid",
    "validate",
    "validate_all",
]
