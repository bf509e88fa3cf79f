#!/usr/bin/env bash
# Builds cpp/tests/test_core.cpp with the core's kernels (the sources of CMakeLists.txt's crres_kernels) and
# runs it.
#   cpp/tests/run.sh native     host g++: the build's vector path (AVX2+FMA on x86-64) and its scalar loops,
#                               optimised and again under ASan+UBSan
#   cpp/tests/run.sh bench [repeats] [vector|all] [landmarks.txt ...]
#                               cpp/tests/bench_align.cpp: the align kernels' CPU time per face, no Python
#   cpp/tests/run.sh compare REV [repeats] [landmarks.txt ...]
#                               the same harness timing git revision REV's cpp/warp.cpp against this checkout's,
#                               alternating in one process (ratios, and the largest output difference)
#   cpp/tests/run.sh aarch64 [--skip-if-unavailable]
#       Debian's aarch64-linux-gnu-g++ (static binary, NEON path) run under qemu-aarch64. Installs
#       g++-aarch64-linux-gnu and qemu-user with apt-get when they are missing. With --skip-if-unavailable
#       (CI), a machine that cannot get them prints why and exits 0 instead of failing.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${1:-native}
skip_ok=0
[[ "${2:-}" == "--skip-if-unavailable" ]] && skip_ok=1
flags=(-std=c++17 -O3 -Wall -Wextra -Wpedantic -Werror -Icpp -pthread)
mapfile -t kernels < <(sed -n '/add_library(crres_kernels/,/)/p' CMakeLists.txt | grep -o 'cpp/[A-Za-z0-9_]*\.cpp')
[[ ${#kernels[@]} -gt 0 ]] || { echo "no kernel sources found in CMakeLists.txt" >&2; exit 1; }

unavailable() {
    if [[ $skip_ok == 1 ]]; then
        echo "test-aarch64 SKIPPED: $*"
        exit 0
    fi
    echo "test-aarch64: $*" >&2
    exit 1
}

case "$target" in
native)
    out=build/cpp-tests/test_core
    mkdir -p "$(dirname "$out")"
    ${CXX:-g++} "${flags[@]}" cpp/tests/test_core.cpp "${kernels[@]}" -o "$out"
    "$out"
    ${CXX:-g++} "${flags[@]}" -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
        -fno-omit-frame-pointer cpp/tests/test_core.cpp "${kernels[@]}" -o "$out-sanitize"
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 "$out-sanitize" | sed 's/^/[asan+ubsan] /'
    ;;
bench)
    out=build/cpp-tests/bench_align
    mkdir -p "$(dirname "$out")"
    ${CXX:-g++} "${flags[@]}" cpp/tests/bench_align.cpp "${kernels[@]}" -o "$out"
    "$out" "${@:2}"
    ;;
compare)
    [[ -n "${2:-}" ]] || { echo "usage: $0 compare REV [repeats] [landmarks.txt ...]" >&2; exit 2; }
    out=build/cpp-tests/bench_compare
    mkdir -p "$(dirname "$out")"
    # REV's warp, its namespace renamed: it links beside this checkout's (the two share every other kernel).
    git show "$2:cpp/warp.cpp" | sed '0,/^namespace crres {$/s//namespace crres::base {/' >"$out-base.cpp"
    grep -q '^namespace crres::base {$' "$out-base.cpp" ||
        { echo "no 'namespace crres {' in $2:cpp/warp.cpp" >&2; exit 1; }
    ${CXX:-g++} "${flags[@]}" -DCRRES_BENCH_BASE cpp/tests/bench_align.cpp "$out-base.cpp" \
        "${kernels[@]}" -o "$out"
    "$out" "${3:-300}" vector "${@:4}"
    ;;
aarch64)
    cxx=${AARCH64_CXX:-aarch64-linux-gnu-g++}
    qemu=${QEMU_AARCH64:-qemu-aarch64}
    if ! command -v "$cxx" >/dev/null || ! command -v "$qemu" >/dev/null; then
        echo "aarch64 tools missing, installing g++-aarch64-linux-gnu and qemu-user (missing: $(command -v "$cxx" >/dev/null || echo "$cxx ")$(command -v "$qemu" >/dev/null || echo "$qemu"))"
        if ! command -v apt-get >/dev/null; then
            unavailable "$cxx / $qemu missing and there is no apt-get to install them"
        fi
        sudo_cmd=()
        if [[ $(id -u) != 0 ]]; then
            command -v sudo >/dev/null && sudo -n true 2>/dev/null \
                || unavailable "$cxx / $qemu missing and apt-get needs root (no passwordless sudo)"
            sudo_cmd=(sudo -n)
        fi
        "${sudo_cmd[@]}" apt-get update -qq || unavailable "apt-get update failed (no network or mirror?)"
        "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu qemu-user \
            >/dev/null || unavailable "apt-get install g++-aarch64-linux-gnu qemu-user failed"
    fi
    out=build/aarch64/test_core
    mkdir -p "$(dirname "$out")"
    # Static, so qemu-user needs no aarch64 sysroot at run time.
    "$cxx" "${flags[@]}" -static cpp/tests/test_core.cpp "${kernels[@]}" -o "$out"
    "$qemu" "$out"
    # The pybind11 module's own source, compiled (not linked or run: no aarch64 Python here) against the host
    # Python's headers, whose pyconfig.h is x86-64's: the two LP64 Linux ABIs agree on what bindings.cpp uses.
    py=${PYTHON_FOR_HEADERS:-.venv/bin/python}
    if [[ -x $py ]] && inc=$("$py" -c "import sysconfig, pybind11; print(sysconfig.get_paths()['include'], pybind11.get_include())" 2>/dev/null); then
        read -r py_inc pb_inc <<<"$inc"
        # CMakeLists' flags for the module (pybind11's macros are not -Wpedantic clean)
        "$cxx" -std=c++17 -O3 -Wall -Wextra -Werror -fPIC -Icpp -I"$py_inc" -I"$pb_inc" -c cpp/bindings.cpp \
            -o build/aarch64/bindings.o
        echo "cpp/bindings.cpp compiles for aarch64"
    else
        echo "cpp/bindings.cpp not compiled for aarch64: no $py with pybind11 (make setup)"
    fi
    ;;
*)
    echo "usage: $0 native | bench [repeats] [vector|all] [landmarks.txt ...] | compare REV [repeats] [landmarks.txt ...] | aarch64 [--skip-if-unavailable]" >&2
    exit 2
    ;;
esac
