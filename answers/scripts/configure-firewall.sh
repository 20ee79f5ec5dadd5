#!/bin/sh
# Octoprov post-install library script: {"name": "configure-firewall.sh"} in postInstall.runScripts.
#
# Turns on a host firewall that drops unsolicited inbound traffic and allows outbound, keeping SSH
# (and any extra TCP ports asked for) open, so the SSH session running this script stays up.
# Uses what the distribution ships, first found of: ufw (Debian, Ubuntu), firewalld (RHEL,
# Fedora, SUSE), nftables (anything else with nft). Running it again gives the same result.
#
# Parameters (exported as variables by the post-install runner):
#   SshPort        TCP port sshd listens on (default 22)
#   ExtraTcpPorts  more TCP ports to open, separated by commas or spaces (default none)
#   AllowPing      true: answer ICMP echo requests (default true)
set -euf  # -f: no globbing, the port lists are split unquoted

ssh_port=${SshPort:-22}
allow_ping=${AllowPing:-true}
old_ifs=$IFS
IFS=', '
# shellcheck disable=SC2086
set -- ${ExtraTcpPorts:-}
IFS=$old_ifs
extra_ports="$*"

check_port() {
    case $1 in
        '' | *[!0-9]* | 0*) echo "not a TCP port: $1" >&2; exit 2 ;;
    esac
    if [ ${#1} -gt 5 ] || [ "$1" -gt 65535 ]; then
        echo "not a TCP port: $1" >&2
        exit 2
    fi
}

check_port "$ssh_port"
for port in $extra_ports; do
    check_port "$port"
done
case $allow_ping in
    true | True | 1) allow_ping=true ;;
    false | False | 0) allow_ping=false ;;
    *) echo "AllowPing must be true or false, not $allow_ping" >&2; exit 2 ;;
esac
ports="$ssh_port $extra_ports"

with_ufw() {
    ufw default deny incoming
    ufw default allow outgoing
    for port in $ports; do
        ufw allow "$port/tcp"
    done
    # ufw answers pings through its before.rules; dropping them means editing that file.
    if [ "$allow_ping" = false ]; then
        echo "ufw keeps answering ping (see /etc/ufw/before.rules)"
    fi
    ufw --force enable
    ufw status verbose
}

with_firewalld() {
    systemctl enable --now firewalld
    for port in $ports; do
        firewall-cmd --permanent --add-port="$port/tcp"
    done
    if [ "$allow_ping" = true ]; then
        firewall-cmd --permanent --remove-icmp-block=echo-request 2>/dev/null || true
    else
        firewall-cmd --permanent --add-icmp-block=echo-request
    fi
    firewall-cmd --reload
    firewall-cmd --list-all
}

with_nftables() {
    rules=/etc/octoprov/firewall.nft
    mkdir -p /etc/octoprov
    ping_rule=""
    if [ "$allow_ping" = true ]; then
        ping_rule="icmp type echo-request accept
        icmpv6 type echo-request accept"
    fi
    port_list=$(echo $ports | tr ' ' ',')
    cat > "$rules.new" <<NFT
# Written by Octoprov's configure-firewall.sh; running the script again rewrites it.
table inet octoprov
delete table inet octoprov
table inet octoprov {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iif "lo" accept
        icmp type { destination-unreachable, time-exceeded, parameter-problem } accept
        icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
        $ping_rule
        udp sport 67 udp dport 68 accept
        udp sport 547 udp dport 546 accept
        tcp dport { $port_list } accept
    }
}
NFT
    nft -c -f "$rules.new"
    mv "$rules.new" "$rules"
    nft -f "$rules"
    # Load it at boot too: nftables.service reads /etc/nftables.conf.
    if ! grep -qs "include \"$rules\"" /etc/nftables.conf; then
        printf '\ninclude "%s"\n' "$rules" >> /etc/nftables.conf
    fi
    if command -v systemctl > /dev/null; then
        systemctl enable nftables
    fi
    nft list table inet octoprov
}

if command -v ufw > /dev/null; then
    with_ufw
elif command -v firewall-cmd > /dev/null; then
    with_firewalld
elif command -v nft > /dev/null; then
    with_nftables
else
    echo "no firewall tool found (ufw, firewalld or nft); install one of them first" >&2
    exit 1
fi
