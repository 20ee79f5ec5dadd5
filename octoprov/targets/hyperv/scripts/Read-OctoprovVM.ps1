
param([Parameter(Mandatory)][string]$Name)
# compared as it is: Get-VM -Name takes wildcards (* ? [ ] `), so a name with them would be matched as a pattern
foreach ($vm in @(Get-VM | Where-Object { $_.Name -eq $Name })) {
    $info = [ordered]@{
        Id = [string]$vm.Id; Name = $vm.Name; Notes = $vm.Notes; State = [string]$vm.State
        Generation = $vm.Generation; Path = $vm.Path
        SecureBoot = if ($vm.Generation -eq 2) { [string](Get-VMFirmware -VM $vm).SecureBoot } else { $null }
        Disks = @(Get-VMHardDiskDrive -VM $vm | ForEach-Object { $_.Path })
        Dvds = @(Get-VMDvdDrive -VM $vm | ForEach-Object { $_.Path })
        Adapters = @(Get-VMNetworkAdapter -VM $vm | ForEach-Object {
            [ordered]@{ Name = $_.Name; MacAddress = $_.MacAddress; SwitchName = $_.SwitchName
                        IsLegacy = [bool]$_.IsLegacy }
        })
    }
    ConvertTo-Json -InputObject $info -Compress -Depth 4
}
