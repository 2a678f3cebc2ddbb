"""Settings of the control plane replicas share: the ``[cluster]`` section of the config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from cluster.urls import parse_control_url


class ClusterSettings(BaseModel):
    """Where replicas keep what they share besides files, and how often they look at it."""

    # hide_input_in_errors: a rejected URL (and its password) stays out of the error text.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    control_url: SecretStr | None = Field(
        None,
        description="The control plane: postgresql://user:password@host:5432/db for replicas "
        "on many hosts (write it as env:NAME, it holds a password), or sqlite:///abs/path "
        "(or a plain path) for processes on one host; unset: an embedded SQLite file.",
    )
    lease_ttl_s: float = Field(
        10.0,
        gt=0,
        description="How long the leader's lease lasts without renewal: a dead leader is "
        "replaced after at most this.",
    )
    poll_interval_s: float = Field(
        0.5, gt=0, description="How often a replica looks for changed canary snapshots."
    )

    @field_validator("control_url")
    @classmethod
    def _url_is_known(cls, url: SecretStr | None) -> SecretStr | None:
        # parse_control_url's errors name the URL with its password masked.
        if url is not None:
            parse_control_url(url.get_secret_value())
        return url
