
param([Parameter(Mandatory)][string]$Name)
foreach ($vm in @(Get-VM -Name $Name -ErrorAction Ignore)) {
    $info = [ordered]@{
        Id = [string]$vm.Id; Name = $vm.Name; Notes = $vm.Notes; State = [string]$vm.State
        Generation = $vm.Generation; Path = $vm.Path
        Disks = @(Get-VMHardDiskDrive -VM $vm | ForEach-Object { $_.Path })
        Dvds = @(Get-VMDvdDrive -VM $vm | ForEach-Object { $_.Path })
        Adapters = @(Get-VMNetworkAdapter -VM $vm | ForEach-Object {
            [ordered]@{ Name = $_.Name; MacAddress = $_.MacAddress; SwitchName = $_.SwitchName
                        IsLegacy = [bool]$_.IsLegacy }
        })
    }
    ConvertTo-Json -InputObject $info -Compress -Depth 4
}
