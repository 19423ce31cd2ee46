"""Settings from the environment (the agent-rendered .env).  Only names
listed in PUBLIC are ever shown; everything else may be a secret."""
import os

PUBLIC = ("APP_ENV", "APP_ROLE", "APP_NAME", "AWS_DEFAULT_REGION", "INSTANCE_ID", "AVAILABILITY_ZONE")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)


def public():
    return {k: os.environ.get(k) for k in PUBLIC}
