
param([Parameter(Mandatory)][string]$Path, [Parameter(Mandatory)][AllowEmptyCollection()][byte[]]$Data,
      [bool]$Append)
$mode = if ($Append) { [IO.FileMode]::Append } else { [IO.FileMode]::Create }
$stream = [IO.File]::Open($Path, $mode, [IO.FileAccess]::Write)
try { $stream.Write($Data, 0, $Data.Length) } finally { $stream.Dispose() }
