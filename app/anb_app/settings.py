"""Settings from the environment (the agent-rendered .env).  Only names
listed in PUBLIC are ever shown; everything else may be a secret."""
import os

PUBLIC = ("APP_ENV", "APP_ROLE", "APP_NAME", "AWS_DEFAULT_REGION", "INSTANCE_ID", "AVAILABILITY_ZONE")

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)

# Refuse to start on settings that cannot work, as a real app would: the
# process exits, and a restart that applied them is reported as failed.
for _name, _url in (("REDIS_URL", REDIS_URL), ("CELERY_BROKER_URL", BROKER_URL)):
    if not _url.startswith(("redis://", "rediss://", "unix://")):
        raise RuntimeError("anb_app: %s is not a redis URL" % _name)


def public():
    return {k: os.environ.get(k) for k in PUBLIC}
