# The scoring worker: slim, non-root, health-checked on /healthz.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 scorer
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY config ./config
# the onnx extra: ONNX versions and pickle-free fleets (allow_pickle = false); the avro one:
# schema-registry records in (input_format = avro or auto)
RUN pip install '.[onnx,avro]' && rm -rf /root/.cache

USER scorer
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SCORER_METRICS_PORT', '9464') + '/healthz', timeout=2)"
ENTRYPOINT ["scorer"]
CMD ["run"]
