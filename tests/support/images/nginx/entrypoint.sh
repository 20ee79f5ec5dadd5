#!/bin/sh
# The real image's start-up contract: each /etc/nginx/templates/NAME.template becomes
# $NGINX_ENVSUBST_OUTPUT_DIR/NAME, with only the variables whose names match NGINX_ENVSUBST_FILTER filled in, and
# NGINX_LOCAL_RESOLVERS read from /etc/resolv.conf where NGINX_ENTRYPOINT_LOCAL_RESOLVERS is set.
set -eu
# as the real image's 15-local-resolvers.envsh: the container's DNS servers for the resolver directive
if [ -n "${NGINX_ENTRYPOINT_LOCAL_RESOLVERS:-}" ]; then
    NGINX_LOCAL_RESOLVERS=$(awk 'BEGIN{ORS=" "} $1=="nameserver" {if ($2 ~ ":") {print "["$2"]"} else {print $2}}' /etc/resolv.conf)
    export NGINX_LOCAL_RESOLVERS="${NGINX_LOCAL_RESOLVERS% }"
fi
templates="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
output="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
names="$(env | cut -d= -f1 | grep -E -- "${NGINX_ENVSUBST_FILTER:-.}" || true)"
variables=""
for name in $names; do
    variables="$variables \${$name}"
done
for template in "$templates"/*"$suffix"; do
    [ -f "$template" ] || continue
    target="$output/$(basename "$template" "$suffix")"
    envsubst "$variables" < "$template" > "$target"
    echo "rendered $template to $target"
done
exec "$@"
