
$switches = foreach ($s in @(Get-VMSwitch)) {
    [ordered]@{ Name = $s.Name; SwitchType = [string]$s.SwitchType; NetAdapter = $s.NetAdapterInterfaceDescription }
}
ConvertTo-Json -Compress -Depth 3 -InputObject @($switches)
