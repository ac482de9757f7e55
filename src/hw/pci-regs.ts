// PCI configuration-space register offsets and bit values (include/uapi/linux/pci_regs.h).

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_HEADER_TYPE_MASK = 0x7f;
export const PCI_HEADER_TYPE_MFD = 0x80;
export const PCI_HEADER_TYPE_NORMAL = 0;
export const PCI_HEADER_TYPE_BRIDGE = 1;
export const PCI_HEADER_TYPE_CARDBUS = 2;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_PRIMARY_BUS = 0x18;
export const PCI_SECONDARY_BUS = 0x19;
export const PCI_SUBORDINATE_BUS = 0x1a;

/** Size of the config space visible without root (sysfs `config` truncates to this for non-root). */
export const PCI_CFG_SPACE_UNPRIV = 64;
export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;

export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_SSVID = 0x0d;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;

export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_TYPE = 0x00f0;
export const PCI_EXP_LNKCAP = 0x0c;
export const PCI_EXP_LNKSTA = 0x12;

export const PCI_EXT_CAP_ID_ACS = 0x000d;
export const PCI_EXT_CAP_ID_ARI = 0x000e;
export const PCI_EXT_CAP_ID_ATS = 0x000f;
export const PCI_EXT_CAP_ID_SRIOV = 0x0010;

/** ACS capability and control bits. */
export const PCI_ACS_CAP = 0x04;
export const PCI_ACS_CTRL = 0x06;
export const PCI_ACS_SV = 0x0001;
export const PCI_ACS_TB = 0x0002;
export const PCI_ACS_RR = 0x0004;
export const PCI_ACS_CR = 0x0008;
export const PCI_ACS_UF = 0x0010;
export const PCI_ACS_EC = 0x0020;
export const PCI_ACS_DT = 0x0040;
/** ACS control/capability bit names, in bit order. */
export const ACS_BIT_NAMES = ['SV', 'TB', 'RR', 'CR', 'UF', 'EC', 'DT'] as const;
export type AcsBitName = (typeof ACS_BIT_NAMES)[number];
export const ACS_BIT: Readonly<Record<AcsBitName, number>> = {
  SV: PCI_ACS_SV,
  TB: PCI_ACS_TB,
  RR: PCI_ACS_RR,
  CR: PCI_ACS_CR,
  UF: PCI_ACS_UF,
  EC: PCI_ACS_EC,
  DT: PCI_ACS_DT,
};
/** "SV RR CR UF" for an ACS register value; "-" for none. */
export const acsBitNames = (v: number): string =>
  ACS_BIT_NAMES.filter((n) => v & ACS_BIT[n]).join(' ') || '-';

/** The bits `pci_bridge_has_acs_redir()` tests. */
export const PCI_ACS_REDIR_MASK = PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC;

export const PCI_SRIOV_CTRL = 0x08;
export const PCI_SRIOV_INITIAL_VF = 0x0c;
export const PCI_SRIOV_TOTAL_VF = 0x0e;
export const PCI_SRIOV_NUM_VF = 0x10;
export const PCI_SRIOV_VF_OFFSET = 0x14;
export const PCI_SRIOV_VF_STRIDE = 0x16;
export const PCI_SRIOV_VF_DID = 0x1a;

/** PCIe device/port types (PCI_EXP_FLAGS_TYPE >> 4) as string literals. */
export type PciePortType =
  | 'endpoint'
  | 'legacy-endpoint'
  | 'root-port'
  | 'upstream-port'
  | 'downstream-port'
  | 'pcie-to-pci-bridge'
  | 'pci-to-pcie-bridge'
  | 'rc-integrated-endpoint'
  | 'rc-event-collector';

export const PCIE_PORT_TYPES: Readonly<Record<number, PciePortType>> = {
  0: 'endpoint',
  1: 'legacy-endpoint',
  4: 'root-port',
  5: 'upstream-port',
  6: 'downstream-port',
  7: 'pcie-to-pci-bridge',
  8: 'pci-to-pcie-bridge',
  9: 'rc-integrated-endpoint',
  10: 'rc-event-collector',
};

export const portTypeCode = (t: PciePortType): number => {
  for (const [k, v] of Object.entries(PCIE_PORT_TYPES)) if (v === t) return Number(k);
  throw new Error(`unknown port type ${t}`);
};

/** Link speed codes of LNKCAP/LNKSTA in GT/s. */
export const LINK_SPEED_GTS: Readonly<Record<number, number>> = { 1: 2.5, 2: 5, 3: 8, 4: 16, 5: 32, 6: 64 };
