# Minimal image; the multi-stage, non-root build arrives with the deployment issue.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip install --no-cache-dir .
ENV TRACKGATE_CONFIG=/etc/trackgate/rules.yaml
ENTRYPOINT ["trackgate", "serve"]
