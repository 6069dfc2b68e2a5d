# Worker and generator image for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream_app ./stream_app
COPY schemas ./schemas
RUN pip install --no-cache-dir .
# Faust keeps small local files (leader assignor state) under the working dir.
WORKDIR /var/lib/stream_app
ENV STREAM_APP_WEB_PORT=6066
EXPOSE 6066
ENTRYPOINT ["stream-app"]
CMD ["worker"]
