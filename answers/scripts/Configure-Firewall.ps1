<#
.SYNOPSIS
    Turns Windows Firewall on for every profile and keeps the machine reachable for management.

.DESCRIPTION
    Octoprov post-install library script: {"name": "Configure-Firewall.ps1"} in postInstall.runScripts.
    Allows WinRM (TCP 5985 and 5986) and, if asked, ICMPv4 echo (ping) from RemoteAddress, then
    enables the Domain, Private and Public profiles with inbound traffic blocked and outbound
    allowed. The allow rules are in place before the profiles turn on, so the WinRM session that
    runs this script is not cut off. Running it again updates the same rules instead of adding more.

.PARAMETER RemoteAddress
    Who may reach WinRM: Any, LocalSubnet, or a comma-separated list of addresses and subnets
    (192.0.2.0/24,198.51.100.7).

.PARAMETER AllowPing
    Also answer ICMPv4 echo requests from RemoteAddress.
#>
[CmdletBinding()]
param(
    [string]$RemoteAddress = 'Any',
    [bool]$AllowPing = $true
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$addresses = @($RemoteAddress -split ',' | ForEach-Object { $_.Trim() } | Where-Object { $_ })
if ($addresses.Count -eq 0) {
    throw 'RemoteAddress is empty: give Any, LocalSubnet or addresses'
}

function Set-InboundAllowRule {
    param([string]$Name, [string]$DisplayName, [hashtable]$Filter)
    $rule = @{ Enabled = 'True'; Action = 'Allow'; Profile = 'Any'; RemoteAddress = $addresses } + $Filter
    if (Get-NetFirewallRule -Name $Name -ErrorAction SilentlyContinue) {
        Set-NetFirewallRule -Name $Name @rule
        Write-Output "Updated firewall rule $DisplayName"
    } else {
        New-NetFirewallRule -Name $Name -DisplayName $DisplayName -Group 'Octoprov' -Direction Inbound @rule |
            Out-Null
        Write-Output "Created firewall rule $DisplayName"
    }
}

Set-InboundAllowRule -Name 'Octoprov-WinRM-In' -DisplayName 'Octoprov: WinRM (TCP 5985, 5986)' `
    -Filter @{ Protocol = 'TCP'; LocalPort = @('5985', '5986') }
if ($AllowPing) {
    Set-InboundAllowRule -Name 'Octoprov-Ping-In' -DisplayName 'Octoprov: ICMPv4 echo request' `
        -Filter @{ Protocol = 'ICMPv4'; IcmpType = '8' }
} elseif (Get-NetFirewallRule -Name 'Octoprov-Ping-In' -ErrorAction SilentlyContinue) {
    Disable-NetFirewallRule -Name 'Octoprov-Ping-In'
    Write-Output 'Disabled firewall rule Octoprov: ICMPv4 echo request'
}

Set-NetFirewallProfile -Profile Domain, Private, Public -Enabled True `
    -DefaultInboundAction Block -DefaultOutboundAction Allow
Get-NetFirewallProfile | Format-Table -AutoSize Name, Enabled, DefaultInboundAction, DefaultOutboundAction |
    Out-String | Write-Output
