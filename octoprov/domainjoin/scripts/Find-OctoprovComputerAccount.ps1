
param([Parameter(Mandatory)][string]$Name, [Parameter(Mandatory)][string]$Server)
try {
    $account = Get-ADComputer -Identity $Name -Server $Server -Properties Description -ErrorAction Stop
} catch [Microsoft.ActiveDirectory.Management.ADIdentityNotFoundException] {
    return
}
ConvertTo-Json -Compress -InputObject ([ordered]@{
    Name = $account.Name; DistinguishedName = $account.DistinguishedName; Description = $account.Description
})
