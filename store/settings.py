"""Settings of the shared store: the ``[store]`` section of the config."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SCHEMES = ("", "file", "s3")


class StoreSettings(BaseModel):
    """Where the files every replica shares live: segments, feedback, datasets, students."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(
        None,
        description="A directory (a shared filesystem such as NFS/EFS, or a local one), "
        "file:///path, or s3://bucket/prefix. Unset: data_dir itself (one node).",
    )
    endpoint_url: str | None = Field(
        None, description="An S3-compatible endpoint, e.g. http://127.0.0.1:9000 (s3:// only)."
    )
    region: str | None = Field(None, description="The bucket's region (default us-east-1).")
    access_key_id: SecretStr | None = Field(None, description="S3 access key id (env:NAME).")
    secret_access_key: SecretStr | None = Field(None, description="S3 secret key (env:NAME).")

    @field_validator("url", "endpoint_url")
    @classmethod
    def _no_credentials_in_urls(cls, value: str | None) -> str | None:
        # The value is never echoed: a URL with a password in it must not reach an error.
        if value is not None and urlsplit(value).password is not None:
            raise ValueError("must not hold credentials; use access_key_id and secret_access_key")
        return value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.strip():
            raise ValueError("is empty; leave it out to keep the store in data_dir")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme {scheme}:// is not supported; use a path, file:// or s3://")
        if scheme == "s3" and not urlsplit(url).netloc:
            raise ValueError("names no bucket; write s3://bucket/prefix")
        return url

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, endpoint: str | None) -> str | None:
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be http://host:port or https://host:port")
        return endpoint

    @model_validator(mode="after")
    def _object_store_options(self) -> StoreSettings:
        s3 = self.is_object_store
        for name in ("endpoint_url", "region", "access_key_id", "secret_access_key"):
            if getattr(self, name) is not None and not s3:
                raise ValueError(f"{name} applies to an s3:// url only")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither")
        return self

    @property
    def is_object_store(self) -> bool:
        return self.url is not None and urlsplit(self.url).scheme.lower() == "s3"
