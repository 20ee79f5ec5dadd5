
$vmHost = Get-VMHost
$volumes = foreach ($v in @(Get-Volume | Where-Object { $_.DriveLetter -and $_.DriveType -eq 'Fixed' })) {
    [ordered]@{ Name = "$($v.DriveLetter):\"; Label = $v.FileSystemLabel; FileSystem = $v.FileSystem
                SizeBytes = [int64]$v.Size; FreeBytes = [int64]$v.SizeRemaining }
}
ConvertTo-Json -Compress -Depth 4 -InputObject ([ordered]@{
    VirtualHardDiskPath = $vmHost.VirtualHardDiskPath; VirtualMachinePath = $vmHost.VirtualMachinePath
    Volumes = @($volumes)
})
