/* guestOS of a .vmx -> vSphere's guest id (vmw:osType, as ovftool
 * writes it) and the CIM_OperatingSystem OSType (the OVF
 * OperatingSystemSection's ovf:id). CIM numbers follow the schema's
 * ValueMap (36 LINUX, 79/80 RHEL, 93/94 Ubuntu, 95/96 Debian, 101 Linux
 * 64-Bit, 102 Other 64-Bit, 103 Windows Server 2008 R2, 105 Windows 7,
 * 107 CentOS 64-bit, 109 Oracle Linux 64-bit, 112 Windows Server 2012,
 * 113/114 Windows 8, 115 Windows Server 2012 R2). Guests newer than the
 * ids we could confirm get 1 ("Other") with their specific vmw:osType,
 * which is what vSphere reads first. */
#include <string.h>

#include "util.h"
#include "vmx.h"

static const struct vmx_os vmx_os_tab[] = {
    {"other", "otherGuest", 1, NULL, "Other (32-bit)"},
    {"other-64", "otherGuest64", 102, NULL, "Other (64-bit)"},
    {"otherlinux", "otherLinuxGuest", 36, NULL, "Other Linux (32-bit)"},
    {"otherlinux-64", "otherLinux64Guest", 101, NULL, "Other Linux (64-bit)"},
    {"other24xlinux-64", "other24xLinux64Guest", 98, NULL, "Other 2.4.x Linux (64-bit)"},
    {"other26xlinux", "other26xLinuxGuest", 99, NULL, "Other 2.6.x Linux (32-bit)"},
    {"other26xlinux-64", "other26xLinux64Guest", 100, NULL, "Other 2.6.x Linux (64-bit)"},
    {"other3xlinux-64", "other3xLinux64Guest", 101, NULL, "Other 3.x Linux (64-bit)"},
    {"other4xlinux-64", "other4xLinux64Guest", 101, NULL, "Other 4.x Linux (64-bit)"},
    {"other5xlinux-64", "other5xLinux64Guest", 101, NULL, "Other 5.x Linux (64-bit)"},
    {"other6xlinux-64", "other6xLinux64Guest", 101, NULL, "Other 6.x Linux (64-bit)"},
    {"rhel5", "rhel5Guest", 79, "5", "Red Hat Enterprise Linux 5 (32-bit)"},
    {"rhel5-64", "rhel5_64Guest", 80, "5", "Red Hat Enterprise Linux 5 (64-bit)"},
    {"rhel6", "rhel6Guest", 79, "6", "Red Hat Enterprise Linux 6 (32-bit)"},
    {"rhel6-64", "rhel6_64Guest", 80, "6", "Red Hat Enterprise Linux 6 (64-bit)"},
    {"rhel7-64", "rhel7_64Guest", 80, "7", "Red Hat Enterprise Linux 7 (64-bit)"},
    {"rhel8-64", "rhel8_64Guest", 80, "8", "Red Hat Enterprise Linux 8 (64-bit)"},
    {"rhel9-64", "rhel9_64Guest", 80, "9", "Red Hat Enterprise Linux 9 (64-bit)"},
    {"centos", "centosGuest", 106, NULL, "CentOS 4/5 (32-bit)"},
    {"centos-64", "centos64Guest", 107, NULL, "CentOS 4/5/6/7 (64-bit)"},
    {"centos6-64", "centos6_64Guest", 107, "6", "CentOS 6 (64-bit)"},
    {"centos7-64", "centos7_64Guest", 107, "7", "CentOS 7 (64-bit)"},
    {"centos8-64", "centos8_64Guest", 107, "8", "CentOS 8 (64-bit)"},
    {"centos9-64", "centos9_64Guest", 107, "9", "CentOS 9 (64-bit)"},
    {"oraclelinux-64", "oracleLinux64Guest", 109, NULL, "Oracle Linux 4/5/6/7 (64-bit)"},
    {"oraclelinux7-64", "oracleLinux7_64Guest", 109, "7", "Oracle Linux 7 (64-bit)"},
    {"oraclelinux8-64", "oracleLinux8_64Guest", 109, "8", "Oracle Linux 8 (64-bit)"},
    {"oraclelinux9-64", "oracleLinux9_64Guest", 109, "9", "Oracle Linux 9 (64-bit)"},
    {"rockylinux-64", "rockylinux_64Guest", 101, NULL, "Rocky Linux (64-bit)"},
    {"almalinux-64", "almalinux_64Guest", 101, NULL, "AlmaLinux (64-bit)"},
    {"ubuntu", "ubuntuGuest", 93, NULL, "Ubuntu Linux (32-bit)"},
    {"ubuntu-64", "ubuntu64Guest", 94, NULL, "Ubuntu Linux (64-bit)"},
    {"debian10-64", "debian10_64Guest", 96, "10", "Debian GNU/Linux 10 (64-bit)"},
    {"debian11-64", "debian11_64Guest", 96, "11", "Debian GNU/Linux 11 (64-bit)"},
    {"debian12-64", "debian12_64Guest", 96, "12", "Debian GNU/Linux 12 (64-bit)"},
    {"sles11-64", "sles11_64Guest", 85, "11", "SUSE Linux Enterprise 11 (64-bit)"},
    {"sles12-64", "sles12_64Guest", 85, "12", "SUSE Linux Enterprise 12 (64-bit)"},
    {"sles15-64", "sles15_64Guest", 85, "15", "SUSE Linux Enterprise 15 (64-bit)"},
    {"freebsd", "freebsdGuest", 42, NULL, "FreeBSD (32-bit)"},
    {"freebsd-64", "freebsd64Guest", 78, NULL, "FreeBSD (64-bit)"},
    {"freebsd12-64", "freebsd12_64Guest", 78, "12", "FreeBSD 12 (64-bit)"},
    {"freebsd13-64", "freebsd13_64Guest", 78, "13", "FreeBSD 13 (64-bit)"},
    {"solaris10-64", "solaris10_64Guest", 81, "10", "Oracle Solaris 10 (64-bit)"},
    {"solaris11-64", "solaris11_64Guest", 81, "11", "Oracle Solaris 11 (64-bit)"},
    {"winxppro", "winXPProGuest", 67, NULL, "Microsoft Windows XP Professional (32-bit)"},
    {"winxppro-64", "winXPPro64Guest", 71, NULL, "Microsoft Windows XP Professional (64-bit)"},
    {"winnetstandard", "winNetStandardGuest", 69, NULL, "Microsoft Windows Server 2003"},
    {"winnetstandard-64", "winNetStandard64Guest", 70, NULL,
     "Microsoft Windows Server 2003 (64-bit)"},
    {"winnetenterprise", "winNetEnterpriseGuest", 69, NULL, "Microsoft Windows Server 2003"},
    {"winnetenterprise-64", "winNetEnterprise64Guest", 70, NULL,
     "Microsoft Windows Server 2003 (64-bit)"},
    {"winvista", "winVistaGuest", 73, NULL, "Microsoft Windows Vista (32-bit)"},
    {"winvista-64", "winVista64Guest", 74, NULL, "Microsoft Windows Vista (64-bit)"},
    {"longhorn", "winLonghornGuest", 76, NULL, "Microsoft Windows Server 2008 (32-bit)"},
    {"longhorn-64", "winLonghorn64Guest", 77, NULL, "Microsoft Windows Server 2008 (64-bit)"},
    {"windows7", "windows7Guest", 105, NULL, "Microsoft Windows 7 (32-bit)"},
    {"windows7-64", "windows7_64Guest", 105, NULL, "Microsoft Windows 7 (64-bit)"},
    {"windows7srv-64", "windows7Server64Guest", 103, NULL, "Microsoft Windows Server 2008 R2"},
    {"windows8", "windows8Guest", 113, NULL, "Microsoft Windows 8 (32-bit)"},
    {"windows8-64", "windows8_64Guest", 114, NULL, "Microsoft Windows 8 (64-bit)"},
    {"windows8srv-64", "windows8Server64Guest", 112, NULL,
     "Microsoft Windows Server 2012 (64-bit)"},
    {"windows9", "windows9Guest", 1, NULL, "Microsoft Windows 10 (32-bit)"},
    {"windows9-64", "windows9_64Guest", 1, NULL, "Microsoft Windows 10 (64-bit)"},
    {"windows11-64", "windows11_64Guest", 1, NULL, "Microsoft Windows 11 (64-bit)"},
    {"windows9srv-64", "windows9Server64Guest", 1, NULL, "Microsoft Windows Server 2016"},
    {"windows2019srv-64", "windows2019srv_64Guest", 1, NULL, "Microsoft Windows Server 2019"},
    {"windows2019srvnext-64", "windows2019srvNext_64Guest", 1, NULL,
     "Microsoft Windows Server 2022"},
    {"windows2022srvnext-64", "windows2022srvNext_64Guest", 1, NULL,
     "Microsoft Windows Server 2025"},
    {"vmkernel7", "vmkernel7Guest", 104, "7", "VMware ESXi 7.0"},
    {"vmkernel8", "vmkernel8Guest", 104, "8", "VMware ESXi 8.0"},
};

const struct vmx_os *vmx_os_lookup(const char *guest_os)
{
	for (size_t i = 0; guest_os && i < VDK_ARRAY_SIZE(vmx_os_tab); i++)
		if (!strcmp(vmx_os_tab[i].vmx, guest_os))
			return &vmx_os_tab[i];
	size_t n = guest_os ? strlen(guest_os) : 0;
	bool is64 = !guest_os || (n > 3 && !strcmp(guest_os + n - 3, "-64"));
	return &vmx_os_tab[is64 ? 1 : 0];
}
