# One studio worker (API + SSE); the web client is served by `make web` or any static host.
# Built by docker-compose.yml; any number of them run against one PostgreSQL.
FROM python:3.11-slim
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
 && useradd --create-home studio && mkdir -p /data && chown studio /data
USER studio
ENV CREATIVE_STUDIO_DATA_DIR=/data
EXPOSE 8420
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8420/api/health/live')"
# A non-loopback bind needs CREATIVE_STUDIO_API_TOKEN (serve refuses to start without it).
CMD ["creative-studio", "serve", "--host", "0.0.0.0", "--port", "8420"]
