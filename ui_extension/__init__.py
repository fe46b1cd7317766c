"""The web page's files (HTML, CSS, ES modules, generated forms): installed as
``truenas_vmware_coord.ui`` and served by the plugin at ``/_plugins/vmware_coord/``."""
