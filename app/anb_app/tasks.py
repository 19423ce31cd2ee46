"""Celery tasks (the worker role).  The broker and result backend are the
instance's redis, as in the seed architecture."""
import os

from celery import Celery

from . import settings

app = Celery("anb_app", broker=settings.BROKER_URL, backend=settings.BROKER_URL)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task
def transcode(video_id: str, seconds: float = 0.0):
    """Pretend to transcode a video; reports which worker did it."""
    import time
    time.sleep(seconds)
    return {"video_id": video_id, "status": "transcoded", "worker_pid": os.getpid(),
            "app_env": os.environ.get("APP_ENV")}
