
param([Parameter(Mandatory)][string]$Domain, [Parameter(Mandatory)][string]$Machine, [string]$MachineOU,
      [bool]$Reuse)
$file = Join-Path ([IO.Path]::GetTempPath()) ('octoprov-' + [Guid]::NewGuid().ToString('N') + '.txt')
$arguments = @('/provision', '/domain', $Domain, '/machine', $Machine, '/savefile', $file)
if ($MachineOU) { $arguments += @('/machineou', $MachineOU) }
if ($Reuse) { $arguments += '/reuse' }
try {
    $output = & (Join-Path $env:SystemRoot 'System32\djoin.exe') @arguments 2>&1
    if ($LASTEXITCODE -ne 0) {
        throw ('djoin.exe failed with exit code {0}: {1}' -f $LASTEXITCODE, ($output | Out-String).Trim())
    }
    [IO.File]::ReadAllText($file)
} finally {
    Remove-Item -LiteralPath $file -Force -ErrorAction SilentlyContinue
}
