# The one image of docker-compose.yml (stream_app:local): the worker and the generator.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY stream_app ./stream_app
COPY schemas ./schemas
# Pinned dependencies (constraints.txt: the versions the tests ran), then a user to run as:
# nothing in the container needs root.
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --uid 10001 --create-home stream_app \
 && mkdir -p /var/lib/stream_app \
 && chown stream_app /var/lib/stream_app
USER stream_app
# Faust keeps small local files (leader assignor state) under the working dir.
WORKDIR /var/lib/stream_app
ENV STREAM_APP_WEB_PORT=6066 PYTHONUNBUFFERED=1
EXPOSE 6066
ENTRYPOINT ["stream-app"]
CMD ["worker"]
