"""The public contract: the pydantic models that go in from the Temporal UI, the temporal CLI and `deployflow start`."""

from deployflow.spec.common import StrictModel, Target

__all__ = ["StrictModel", "Target"]
