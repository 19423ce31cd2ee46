"""FastAPI API: /health for nginx and the agent, /settings to show what the
.env gave the process, /videos/{id}/transcode to enqueue a celery task
through redis and wait for its result."""
import os

from fastapi import FastAPI, HTTPException

from . import settings
from .tasks import transcode

app = FastAPI(title="ANB sample API")


@app.get("/health")
def health():
    return {"status": "ok", "pid": os.getpid()}


@app.get("/settings")
def show_settings():
    return settings.public()


@app.post("/videos/{video_id}/transcode")
def enqueue(video_id: str, timeout: float = 20.0):
    try:
        return transcode.delay(video_id).get(timeout=timeout)
    except Exception as e:  # timeout, broker down: the caller sees why
        raise HTTPException(status_code=503, detail=type(e).__name__)
