#!/bin/sh
# The real image's start-up contract: each /etc/nginx/templates/NAME.template becomes
# $NGINX_ENVSUBST_OUTPUT_DIR/NAME, with only the variables whose names match NGINX_ENVSUBST_FILTER filled in.
set -eu
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
