"""The fleet: PostgreSQL servers that hold tenant databases."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.db import models
from django.utils import timezone

from tenantry import crypto

GIB = 1024**3


class Server(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # The URL carries a password: stored encrypted, like every secret at rest.
    url_encrypted = models.TextField()
    capacity_bytes = models.BigIntegerField(default=100 * GIB)
    draining = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def url(self) -> str:
        return crypto.decrypt(self.url_encrypted)

    @url.setter
    def url(self, value: str) -> None:
        self.url_encrypted = crypto.encrypt(value)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for display."""
        parts = urlsplit(self.url)
        user = f"{parts.username}@" if parts.username else ""
        return f"{parts.scheme}://{user}{parts.hostname}:{parts.port or 5432}"
