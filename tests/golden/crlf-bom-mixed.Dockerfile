# syntax=docker/dockerfile:1
from alpine:3.20 as Base
Run --mount=type=secret,id=tok,env=TOKEN \
    --network=none echo "$TOKEN" \

  # a comment inside the continuation
    && echo done
copy --from="base" --chmod=0644 --exclude=*.tmp -- --weird-name /dst/
EnV A=1 B="two words" C=three\ words
label "com.example.vendor"="ACME Inc" version=1.0
expose 80/tcp 53/udp 7000-7010
user 1000:1000
workdir /srv/$A
arg X=1 Y
volume ["/data", "/logs"]
healthcheck NONE
onbuild COPY --chown=app:app . /app
stopsignal SIGTERM
shell ["/bin/bash", "-o", "pipefail", "-c"]
entrypoint ["/entry", "é ♥ 한"]
cmd echo trailing backslash \
