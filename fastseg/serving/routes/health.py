"""`GET /healthz` (the process answers) and `GET /readyz` (the model is loaded and warmed up);
no token needed, so an orchestrator's probe needs no secret."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from fastseg.serving.dependencies import Served
from fastseg.serving.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
def readyz(served: Served) -> JSONResponse:
    if served.ready:
        return JSONResponse({"ready": True, "status": "ready"})
    if served.failed:  # never ready: a probe should not wait on it (why: in the server's log)
        return JSONResponse({"ready": False, "status": "the model's warm-up failed (see the server's log)"},
                            status_code=503)  # fmt: skip
    return JSONResponse({"ready": False, "status": "loading the model"}, status_code=503,
                        headers={"Retry-After": "1"})  # fmt: skip
