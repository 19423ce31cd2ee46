"""The ANB sample app: a FastAPI API (under gunicorn) and a celery worker.

A stand-in for the ANB video platform used by anb-agent's tests and demo:
it reads its settings from the .env the agent renders (through systemd's
EnvironmentFile=) and shows them, so a test can prove a rendered value
reached the process.
"""
