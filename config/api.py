"""The management API: one NinjaAPI mounting each app's router under /api/v1."""

from ninja import NinjaAPI

api = NinjaAPI(title="Gatehouse management API", version="1", urls_namespace="api")


@api.get("/health", auth=None, tags=["meta"])
def health(request) -> dict[str, str]:
    return {"status": "ok"}
