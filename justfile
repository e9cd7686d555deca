# Mirrors `cargo xtask`; see README.md.

default:
    @just --list

# Release build of every filter for wasm32-wasip1, with sizes
build:
    cargo xtask build

# Find or install Envoy
envoy:
    cargo xtask envoy

# The full chain in Envoy on 127.0.0.1:10000 (add --tour for a scripted tour)
demo *ARGS:
    cargo xtask demo {{ARGS}}

# Every check CI runs
test:
    cargo xtask test

# Our wasm filters against Envoy's native ones, side by side (BENCHMARKS.md); --quick, --only X, --before REV, --calibrate, --profile ID
bench *ARGS:
    cargo xtask bench {{ARGS}}

# The modules as OCI images for Istio (target/oci/); --variant compat|oci, --module NAME, --push HOST:PORT/REPO:TAG
oci *ARGS:
    cargo xtask oci {{ARGS}}

# Long drills kept out of `test`
soak:
    cargo xtask soak

# Every fuzz target for a bounded time (default 30 s each; nightly)
fuzz *ARGS:
    cargo xtask fuzz {{ARGS}}

# A token for the docker-compose demo (DEMO ONLY key); --sub S, --scope "a b", --ttl SECONDS, --aud A
token *ARGS:
    cargo xtask token {{ARGS}}

# Write schemas/<filter>.schema.json from the config types
schemas:
    cargo xtask schemas

# Check plugin configurations offline (JSON with --filter NAME, a WasmPlugin, an Envoy config)
check-config FILE *ARGS:
    cargo xtask check-config {{FILE}} {{ARGS}}
