# The gateway image: one process serving HTTP (8080) and SMTP (2525) on its SQLite volume.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY routing ./routing
COPY config ./config
RUN pip install --no-cache-dir . && useradd --system --home /data gateway && mkdir -p /data \
    && chown gateway /data
USER gateway
ENV GATEWAY_HTTP_HOST=0.0.0.0 \
    GATEWAY_SMTP_HOST=0.0.0.0 \
    GATEWAY_DB=sqlite:////data/gateway.db
VOLUME ["/data"]
EXPOSE 8080 2525
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["python", "-m", "gateway", "serve"]
