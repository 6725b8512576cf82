# trackgate: build stage installs the project into a venv; the final stage is a
# slim Python with only that venv, running as a numeric non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md LICENSE ./
COPY sidecar ./sidecar
RUN pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRACKGATE_CONFIG=/etc/trackgate/rules/rules.yaml
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["trackgate", "serve"]
