
param([Parameter(Mandatory)][string]$VMName, [int]$Seconds = 10)
$vm = Get-CimInstance -Namespace root\virtualization\v2 -ClassName Msvm_ComputerSystem |
    Where-Object { $_.ElementName -eq $VMName } | Select-Object -First 1
if (-not $vm) { throw "no VM called $VMName" }
$keyboard = Get-CimAssociatedInstance -InputObject $vm -ResultClassName Msvm_Keyboard
for ($i = 0; $i -lt $Seconds; $i++) {
    Invoke-CimMethod -InputObject $keyboard -MethodName TypeKey -Arguments @{ keyCode = [uint32]13 } | Out-Null
    Start-Sleep -Seconds 1
}
