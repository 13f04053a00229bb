import Core
import Datasets
