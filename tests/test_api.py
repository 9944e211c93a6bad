from __future__ import annotations

from django.test import Client


def test_openapi_description_and_docs_page_are_served(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    assert "/api/v1/me" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"]["scheme"] == "bearer"
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200
    # Served from our own static files: no CDN.
    assert "cdn" not in docs.content.decode().lower()


def test_errors_answer_json_with_a_sentence(db: None) -> None:
    response = Client().get("/api/v1/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"].startswith("A valid API key is required")


def test_unknown_api_paths_are_404(db: None) -> None:
    assert Client().get("/api/v1/nothing-here").status_code == 404
