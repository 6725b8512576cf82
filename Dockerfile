# trackgate: the build stage (full Python image: it has a C compiler) compiles the
# per-request modules with mypyc (build_native.py, README "Performance") and installs
# the project into a venv; the final stage is a slim Python with only that venv,
# running as a numeric non-root user. Should the compiled build fail, the image is
# pure Python and trackgate's `build` log line says so. Both stages are bookworm.
FROM python:3.11-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md LICENSE build_native.py ./
COPY sidecar ./sidecar
RUN python -m venv /opt/native \
 && /opt/native/bin/pip install --no-cache-dir 'setuptools>=77' 'mypy>=1.10' . \
 && /opt/native/bin/python build_native.py
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRACKGATE_CONFIG=/etc/trackgate/rules/rules.yaml
# The compiled modules must load here (same Debian release as the build stage):
# a build that does not load fails the image build, not the pod.
RUN python -c "import sidecar.handler, sidecar; print(sidecar.NATIVE)"
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["trackgate", "serve"]
