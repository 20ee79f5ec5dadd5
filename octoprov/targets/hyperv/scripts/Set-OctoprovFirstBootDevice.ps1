
param([Parameter(Mandatory)][string]$VMName, [Parameter(Mandatory)][ValidateSet('Network', 'DVD', 'Disk')][string]$Device,
      [string]$Path)
if ($Device -eq 'Network') {
    $first = Get-VMNetworkAdapter -VMName $VMName | Select-Object -First 1
} elseif ($Device -eq 'Disk') {
    $first = Get-VMHardDiskDrive -VMName $VMName | Where-Object { $_.Path -eq $Path } | Select-Object -First 1
} else {
    $first = Get-VMDvdDrive -VMName $VMName | Where-Object { $_.Path -eq $Path } | Select-Object -First 1
}
if (-not $first) { throw "$VMName has no $Device device to boot from" }
Set-VMFirmware -VMName $VMName -FirstBootDevice $first -ErrorAction Stop
