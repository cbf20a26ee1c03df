"""A Lambda target (configs/targets/*.yaml): memory, architecture, package type, runtime."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from lambdaslim.aws import limits as L


class LambdaTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str
    memory_mb: int = Field(ge=L.MEMORY_MB_MIN, le=L.MEMORY_MB_MAX)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    package_type: Literal["zip", "container"] = "zip"
    python: Literal["3.10", "3.11", "3.12", "3.13"] = "3.11"
    ephemeral_storage_mb: int = Field(512, ge=L.EPHEMERAL_MB_MIN, le=L.EPHEMERAL_MB_MAX)
    timeout_s: int = Field(30, ge=1, le=L.TIMEOUT_S_MAX)
    direct_upload: bool = Field(False, description="zip uploaded without S3: 50 MB zipped limit")

    @field_validator("direct_upload")
    @classmethod
    def _direct_upload_needs_zip(cls, v: bool, info: ValidationInfo) -> bool:
        # A field validator (not a model validator) so the error points at direct_upload, not the top level.
        if v and info.data.get("package_type", "zip") != "zip":
            raise ValueError("direct_upload applies to zip packages only")
        return v

    @property
    def vcpus(self) -> float:
        return min(L.VCPU_MAX, self.memory_mb / L.MB_PER_VCPU)
