@echo off
rem Octoprov WinPE start script for task 42 (KVM-01), rendered from
rem octoprov.answerfiles.startnet.Startnet. It installs Windows without setup.exe, in the order
rem of the spec's "Finale startnet.cmd Struktur", and reports every step to Octoprov.
rem Only checked values stand in it (numbers, host names, addresses, the task token, paths of
rem letters, digits and ._()+-): none needs cmd escaping. Tools: find (WinPE has no findstr),
rem ping as sleep (no timeout.exe), curl.exe or else PowerShell for the callbacks.
setlocal enableextensions enabledelayedexpansion
set "OCTO=X:\octoprov"
mkdir "%OCTO%" 2>nul
set "LOG=%OCTO%\startnet.log"
set "TASK_ID=42"
set "TOKEN=cAllBack-T0ken_0123456789abcdefghijklmnopq"
set "CALLBACK_URL=http://192.0.2.10:8080/api/v1/provisioning/pxe/status"
set "SERVER=192.0.2.10"
rem the wait step a failure is reported against: installer_started until it is reported
set "WAITING=installer_started"
set "STEP=0 start"
set "REASON="
set "POST="
if exist "%SystemRoot%\System32\curl.exe" set "POST=curl"
if not defined POST if exist "%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe" set "POST=powershell"
echo Octoprov: installing KVM-01 (task 42), log in %LOG%

rem [1] VirtIO drivers, so that WinPE sees the disk and the network (viostor: virtio-blk disks,
rem     vioscsi: virtio-scsi disks, netkvm: the NIC)
set "STEP=1 drvload-virtio"
call :begin
set "DISK_DRIVER="
drvload "X:\Windows\System32\drivers\viostor.inf" >>"%LOG%" 2>&1 && set "DISK_DRIVER=viostor"
drvload "X:\Windows\System32\drivers\vioscsi.inf" >>"%LOG%" 2>&1 && set "DISK_DRIVER=!DISK_DRIVER! vioscsi"
if not defined DISK_DRIVER set "REASON=neither viostor nor vioscsi could be loaded"
if not defined DISK_DRIVER goto fail
drvload "X:\Windows\System32\drivers\netkvm.inf" >>"%LOG%" 2>&1
if errorlevel 1 goto fail
rem the drivers need a few seconds to bring up their devices
ping -n 6 127.0.0.1 >nul
call :done

rem [2] WinPE's own initialisation (winpeshl.ini runs this script instead of the default shell)
set "STEP=2 wpeinit"
call :begin
wpeinit >>"%LOG%" 2>&1
if errorlevel 1 goto fail
call :done

rem [3] the network stack
set "STEP=3 initializenetwork"
call :begin
wpeutil initializenetwork >>"%LOG%" 2>&1
if errorlevel 1 goto fail
call :done

rem [4] wait for an address from DHCP (any IPv4 address but a link-local one), three minutes at most
set "STEP=4 wait-for-address"
call :begin
set /a TRIES=0
:wait_address
ipconfig | find "IPv4" | find /v "169.254." >nul
if not errorlevel 1 goto have_address
set /a TRIES+=1
if !TRIES! geq 90 set "REASON=no IPv4 address from DHCP after 3 minutes"
if !TRIES! geq 90 goto fail
ping -n 3 127.0.0.1 >nul
goto wait_address
:have_address
ipconfig >>"%LOG%" 2>&1
call :done
rem the task learns here that WinPE runs; the steps before could not report (no network yet)
call :report installer_started "WinPE is up and has a network address"
if errorlevel 1 set "REASON=Octoprov did not take the installer_started callback"
if defined REASON goto fail
set "WAITING=os_installed"

rem [5] the SMB client (the workstation service, not lanmanserver)
set "STEP=5 lanmanworkstation"
call :begin
rem guest access: Windows 10 1709 and later refuse unsigned guest sessions unless told otherwise (WinPE only)
reg add HKLM\SYSTEM\CurrentControlSet\Services\LanmanWorkstation\Parameters /v AllowInsecureGuestAuth /t REG_DWORD /d 1 /f >>"%LOG%" 2>&1
reg add HKLM\SYSTEM\CurrentControlSet\Services\LanmanWorkstation\Parameters /v RequireSecuritySignature /t REG_DWORD /d 0 /f >>"%LOG%" 2>&1
net start lanmanworkstation >>"%LOG%" 2>&1
sc query lanmanworkstation | find "RUNNING" >nul
if errorlevel 1 goto fail
call :done

rem [6] mount the image share; the first attempts fail (error 53/67) until the service is ready
set "STEP=6 smb-mount"
call :begin
set /a TRIES=0
:mount_images
net use Z: /delete /y >nul 2>&1
net use Z: "\\%SERVER%\images" "" /user:guest >>"%LOG%" 2>&1
if not errorlevel 1 goto images_mounted
set /a TRIES+=1
if !TRIES! geq 30 set "REASON=the image share could not be mounted in 5 minutes"
if !TRIES! geq 30 goto fail
ping -n 11 127.0.0.1 >nul
goto mount_images
:images_mounted
set /a TRIES=0
:mount_drivers
net use Y: /delete /y >nul 2>&1
net use Y: "\\%SERVER%\drivers" "" /user:guest >>"%LOG%" 2>&1
if not errorlevel 1 goto drivers_mounted
set /a TRIES+=1
if !TRIES! geq 30 set "REASON=the driver share could not be mounted in 5 minutes"
if !TRIES! geq 30 goto fail
ping -n 11 127.0.0.1 >nul
goto mount_drivers
:drivers_mounted
if not exist "Z:\windows\ws2025\install.wim" set "REASON=the image is not on the share"
if defined REASON goto fail
call :done

rem [6b] the matched driver packs into WinPE (storage and network controllers for the installation);
rem      a driver that does not load here (another model, another architecture) is reported, not fatal
set "STEP=6b drvload-packs"
call :begin
set /a UNLOADED=0
rem pack 1: Y:\dell\r750 (2024)
drvload "Y:\dell\r750 (2024)\storage\perc.inf" >>"%LOG%" 2>&1 || set /a UNLOADED+=1
drvload "Y:\dell\r750 (2024)\net\bcm.INF" >>"%LOG%" 2>&1 || set /a UNLOADED+=1
if !UNLOADED! gtr 0 call :post progress ok "!UNLOADED! driver pack drivers did not load in WinPE"
call :done

rem [7] partitions, from a diskpart script written here (WinPE has none of its own)
set "STEP=7 diskpart"
call :begin
set "DP=%OCTO%\diskpart.txt"
>"%DP%" echo select disk 0
>>"%DP%" echo clean
>>"%DP%" echo convert gpt
>>"%DP%" echo create partition efi size=512
>>"%DP%" echo format quick fs=fat32 label=System
>>"%DP%" echo assign letter=S
>>"%DP%" echo create partition msr size=128
>>"%DP%" echo create partition primary
>>"%DP%" echo format quick fs=ntfs label=Windows
>>"%DP%" echo assign letter=W
>>"%DP%" echo exit
diskpart /s "%DP%" >>"%LOG%" 2>&1
if errorlevel 1 goto fail
call :done

rem [8] the Windows image, edition 2
set "STEP=8 apply-image"
call :begin
dism /apply-image /imagefile:"Z:\windows\ws2025\install.wim" /index:2 /applydir:W:\ >>"%LOG%" 2>&1
if errorlevel 1 goto fail
call :done

rem [9] drivers into the installed Windows, before bcdboot: without its disk driver it stops
rem     with INACCESSIBLE_BOOT_DEVICE after the reboot
set "STEP=9 add-driver"
call :begin
dism /image:W:\ /add-driver /driver:"X:\Windows\System32\drivers\viostor.inf" >>"%LOG%" 2>&1
if errorlevel 1 goto fail
dism /image:W:\ /add-driver /driver:"X:\Windows\System32\drivers\vioscsi.inf" >>"%LOG%" 2>&1
if errorlevel 1 goto fail
dism /image:W:\ /add-driver /driver:"X:\Windows\System32\drivers\netkvm.inf" >>"%LOG%" 2>&1
if errorlevel 1 goto fail
dism /image:W:\ /add-driver /driver:"Y:\dell\r750 (2024)" /recurse >>"%LOG%" 2>&1
if errorlevel 1 call :post progress ok "driver pack 1: some drivers were not added to Windows"
call :done

rem [9b] the answer file, where Windows looks for it at its first start (specialize, oobeSystem)
set "STEP=9b answer-file"
call :begin
mkdir W:\Windows\Panther 2>nul
copy /y "%SystemRoot%\System32\autounattend.xml" W:\Windows\Panther\unattend.xml >>"%LOG%" 2>&1
if errorlevel 1 goto fail
call :done

rem [10] boot files on the system partition
set "STEP=10 bcdboot"
call :begin
bcdboot W:\Windows /s S: /f UEFI >>"%LOG%" 2>&1
if errorlevel 1 goto fail
call :done

rem the task must know before the reboot: a machine whose install is not reported boots the installer again
call :report os_installed "Windows applied, drivers added, boot files written"
if errorlevel 1 set "REASON=Octoprov did not take the os_installed callback"
if defined REASON goto fail

rem [11] off: Octoprov turns Secure Boot on while the machine is off, then starts it into Windows
set "STEP=11 shutdown"
call :begin
wpeutil shutdown
exit /b 0

:begin
echo [%TIME%] step %STEP% >>"%LOG%"
echo Octoprov: step %STEP%
call :post progress ok "step %STEP% started"
exit /b 0

:done
call :post progress ok "step %STEP% done"
exit /b 0

:report
rem a callback the task waits for: %1 event, %2 message (quoted); tried for about a minute
set /a REPORT_TRIES=0
:report_again
call :post %1 ok %2
if not errorlevel 1 exit /b 0
set /a REPORT_TRIES+=1
if !REPORT_TRIES! geq 10 exit /b 1
ping -n 6 127.0.0.1 >nul
goto report_again

:post
rem %1 event, %2 ok or failed, %3 message (quoted). The JSON is written to a file: no quoting
rem on curl's command line to get wrong. Redirection first, so no trailing digit becomes a handle.
>"%OCTO%\callback.json" echo {"taskId":%TASK_ID%,"token":"%TOKEN%","event":"%~1","status":"%~2","message":"%~3"}
if "%POST%"=="curl" (
  curl.exe -s -S -f --connect-timeout 5 -m 30 -H "Content-Type: application/json" --data-binary "@%OCTO%\callback.json" "%CALLBACK_URL%" >>"%LOG%" 2>&1
  exit /b !ERRORLEVEL!
)
if "%POST%"=="powershell" (
  powershell.exe -NoProfile -Command "Invoke-RestMethod -Method Post -Uri '%CALLBACK_URL%' -ContentType 'application/json' -InFile '%OCTO%\callback.json'" >>"%LOG%" 2>&1
  exit /b !ERRORLEVEL!
)
echo no curl.exe or PowerShell in this WinPE: callback %~1 not sent >>"%LOG%"
exit /b 1

:fail
set "CODE=%ERRORLEVEL%"
if not defined REASON set "REASON=exit code %CODE%"
echo Octoprov: step %STEP% failed: %REASON%
echo [%TIME%] step %STEP% failed: %REASON% >>"%LOG%"
call :post %WAITING% failed "step %STEP% failed: %REASON%"
echo The task is marked failed. Log: %LOG%. Leaving this shell reboots the machine.
cmd.exe /k
exit /b 1
